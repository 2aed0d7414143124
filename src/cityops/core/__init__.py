"""Cross-cutting pieces: settings, database, clock, events, errors, i18n, logging."""
