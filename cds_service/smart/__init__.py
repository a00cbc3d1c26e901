"""The evidence-timeline SMART app (issue 15): launch, authorisation, sessions (no Flask here;
routes in ``web.smart_app``). ``sessions`` is imported by the database set-up, so this package
imports nothing heavy itself."""
