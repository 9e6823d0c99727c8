"""One module per AEP service, each exposing ``SERVICE`` (prefix + route table)."""
