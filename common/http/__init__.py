"""The HTTP edge the Flask services share; each module is one concern (see app.py)."""
