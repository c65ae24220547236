"""Storage consumers: Parquet (embedded default, WAL-backed), Redis Streams and PostgreSQL."""
