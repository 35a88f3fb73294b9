"""An application that knows nothing of OpenTelemetry: run it under ``opentelemetry-instrument``.

It makes a few openai calls against ``OPENAI_BASE_URL`` and then waits (so the test can scrape
its in-process Prometheus endpoint) until its standard input closes.
"""

import sys

import openai

client = openai.OpenAI(max_retries=0)
messages = [{"role": "user", "content": "hello"}]
client.chat.completions.create(model="gpt-4o-mini", messages=messages)
for _ in client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
    pass
client.embeddings.create(model="text-embedding-3-small", input="hello")
print("calls done", flush=True)
sys.stdin.read()
