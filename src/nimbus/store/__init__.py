"""Metadata (SQLAlchemy Core, SQLite or PostgreSQL) and code storage."""
