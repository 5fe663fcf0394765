"""The web dashboard served by `cloudact serve` at /ui/ (app.py: routes; session.py: sign-in; pages.py: data)."""
