"""Local stand-ins for production services (PostgreSQL, R2, Shopify), for the demo, tests and benchmarks."""
