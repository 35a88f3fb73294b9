"""USD prices of LLM calls: the bundled genai-prices catalog plus the user's price file.

Usage::

    book = PriceBook(os.environ.get("OTEL_LLM_COST_PRICES_FILE"))
    pricer = book.pricer("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")  # cached
    costs = pricer.cost(Usage(input=1000, cache_read=200, output=300), when=time.time())
    # -> USD per token type (input, cache_read, cache_write, output, reasoning), or None
"""

from ._catalog import KNOWN_PROVIDER_NAMES, PROVIDER_MAP
from ._file import (
    PriceEntry,
    PriceFileError,
    PriceProblem,
    PriceTier,
    load_price_file,
    normalize_model,
)
from ._pricer import ModelPricer, PriceBook, PriceStatus, Rates

__all__ = [
    "KNOWN_PROVIDER_NAMES",
    "PROVIDER_MAP",
    "ModelPricer",
    "PriceBook",
    "PriceEntry",
    "PriceFileError",
    "PriceProblem",
    "PriceStatus",
    "PriceTier",
    "Rates",
    "load_price_file",
    "normalize_model",
]
