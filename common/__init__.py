"""Code shared by every video2mp3 service: config, logging, errors, messaging, HTTP, tokens."""
