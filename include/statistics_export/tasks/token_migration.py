"""Move the active PUBLIC shops still on non-expiring offline tokens to expiring ones, by Shopify's token exchange.

    python -m include.statistics_export.tasks.token_migration              # dry run: lists what it would do
    python -m include.statistics_export.tasks.token_migration --execute    # exchanges, one shop at a time
    python -m include.statistics_export.tasks.token_migration --execute --shop-id shop_1 --shop-id shop_2

From 2027-01-01 Shopify rejects public apps' non-expiring offline tokens (custom and merchant-created apps are
exempt, so only ``"ShopCredential".mode = 'PUBLIC'`` shops are listed). The exchange needs no merchant: each shop's
session row is locked, checked again (still non-expiring), its token exchanged at the token endpoint for an
expiring pair, and the pair written back atomically, as the export's refreshes are (``tokens.py``).

**The exchange revokes the old token and cannot be undone**: the app must read the session's new pair (Prisma
session storage does). A retry with the original token within 7 days returns the same pair. Nothing is printed
but shop ids, domains and session ids, never a token. It reads Airflow's ``app_db`` and ``shopify_default``
connections: run it where they are configured (a scheduler or worker container). Exit status 1 if any shop
failed (the others are migrated), 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from export_hooks.shopify_tokens import IssuedTokens, ShopifyTokenEndpoint
from include.statistics_export.connections import app_db
from include.statistics_export.errors import failure_reason
from include.statistics_export.tokens import (
    NON_EXPIRING_DEADLINE,
    SessionSecrets,
    exchange_session,
    migration_candidates,
)


def main(argv: list[str] | None = None) -> int:
    """List (and with --execute, migrate) the shops on non-expiring tokens; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m include.statistics_export.tasks.token_migration", description=__doc__
    )
    parser.add_argument("--execute", action="store_true", help="exchange the tokens (default: a dry run)")
    parser.add_argument("--shop-id", action="append", default=[], help="only this shop (repeatable)")
    args = parser.parse_args(argv)

    with app_db() as conn:
        candidates = migration_candidates(conn, args.shop_id or None)
        conn.commit()
    print(
        f"{len(candidates)} active PUBLIC shop(s) on non-expiring offline tokens (refused by Shopify from "
        f"{NON_EXPIRING_DEADLINE}):"
    )
    for shop in candidates:
        print(f"  {shop.shop_id} ({shop.shop_domain}), session {shop.session_id}")
    if not args.execute:
        print("Dry run: nothing exchanged. --execute exchanges them; Shopify revokes each old token (irreversible).")
        return 0

    endpoint = ShopifyTokenEndpoint()

    def exchange(secrets: SessionSecrets) -> IssuedTokens:
        return endpoint.exchange(secrets.api_domain, secrets.client_id, secrets.client_secret, secrets.token)

    failed = 0
    for shop in candidates:
        try:
            with app_db() as conn:
                migrated = exchange_session(conn, shop, exchange)
        except Exception as exc:  # one shop's refusal must not stop the others
            failed += 1
            print(f"  {shop.shop_id}: failed: {failure_reason(exc)}")
            continue
        print(f"  {shop.shop_id}: {'migrated to expiring tokens' if migrated else 'already on expiring tokens'}")
    print(f"{len(candidates) - failed} of {len(candidates)} shop(s) done, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
