"""Outgoing mail through an outbox table: ``message`` (what a message is, and its MIME form:
pure), ``outbox`` (``queue_mail``, the call other code makes) and ``sender`` (the task that
delivers through SMTP or writes .eml files, with retries). Imports no aiohttp."""
