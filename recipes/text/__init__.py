"""Streaming character language model and as-you-type topic classifier trained on the Debian ``fortunes`` text."""
