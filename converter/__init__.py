"""Converter service: consumes video jobs and makes MP3s."""
