"""One module per provider SDK: each translates that SDK's shapes into call records."""
