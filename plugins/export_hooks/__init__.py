"""Hooks of the product statistics export: Shopify Admin GraphQL and Cloudflare R2."""
