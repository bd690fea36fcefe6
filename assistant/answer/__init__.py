"""Answerers compose a reply from retrieved passages: extractive offline, LLM when configured."""
