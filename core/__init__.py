"""Plumbing below the apps: database and Redis helpers that every app may use and that know
nothing of the market. Imports nothing of ours."""
