"""Notification service: consumes finished jobs from the mp3 queue and emails their owners."""
