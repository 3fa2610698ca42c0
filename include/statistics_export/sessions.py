"""Linking unlinked sessions to their shops (the original's ``link:sessions``), at the start of each run.

A shop is exported only through the session linked to it by ``"Session"."shopId"``. Sessions made before
that column existed, or by an older app version, have it NULL, and their shop would fail every day. For
each active shop without a usable linked session, this considers the unlinked usable sessions only:

- a session *claims* a credential when its ``shop`` equals the credential's domain, or when its token,
  asked ``shop { myshopifyDomain primaryDomain { host } }``, answers with the credential's domain as the
  myshopify domain or as the primary domain's host (a shop behind a custom domain); an expiring token past
  its hour is not asked (Shopify would answer 401), so its session claims by its ``shop`` only;
- ``"shopId"`` is set only when exactly one credential is claimed, only where it is still NULL (never an
  overwrite: the UPDATE itself says ``AND "shopId" IS NULL``), and only for a shop that needs it;
- a token Shopify rejects (revoked: the app was uninstalled or reinstalled), a session claiming several
  credentials (ambiguous), a shop no session claims (no match) and a token that could not be asked are
  counted with the shops named; nothing is guessed and nothing fails the run.

Every unlinked usable session is asked once (a session does not say which shop it serves until asked),
but only when some shop needs a link, so a fleet whose shops are all linked asks nothing; a rerun finds
the linked shops linked and asks again only about what stayed unlinked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from include.statistics_export.handoffs import ShopRef
from include.statistics_export.shop_fence import NOT_REDACTED
from include.statistics_export.shops import USABLE_SESSION, display_domain


@dataclass(frozen=True)
class TokenAnswer:
    """What Shopify answered a session's token: its shop's domains, or why there is no answer."""

    myshopify_domain: str | None = None
    primary_host: str | None = None
    failure: Literal["revoked", "unanswered"] | None = None
    detail: str = ""


# Ask Shopify which shop a token belongs to: (api domain, token) -> answer. Supplied by the task layer (the hook).
AskShop = Callable[[str, str], TokenAnswer]

_SHOPS_WITHOUT_USABLE_SESSION = f"""
SELECT c.id, c."shopDomain"
FROM "ShopCredential" c
WHERE c."isActive" AND {NOT_REDACTED}
  AND (%(shop_ids)b::text[] IS NULL OR c.id = ANY(%(shop_ids)b::text[]))
  AND NOT EXISTS (SELECT 1 FROM "Session" s WHERE s."shopId" = c.id AND {USABLE_SESSION})
ORDER BY c.id
"""

_CREDENTIAL_DOMAINS = 'SELECT id, "shopDomain" FROM "ShopCredential"'

# An expiring token past its hour cannot be asked (Shopify answers 401, as for a revoked one): such a session
# claims a credential by its shop only.
_UNLINKED_SESSIONS = f"""
SELECT s.id, s.shop, s."accessToken", (s.expires IS NOT NULL AND s.expires <= now() AT TIME ZONE 'UTC')
FROM "Session" s
WHERE s."shopId" IS NULL AND {USABLE_SESSION} AND btrim(s."accessToken") <> ''
ORDER BY s.id
"""

_LINK = 'UPDATE "Session" SET "shopId" = %(shop_id)s WHERE id = %(session_id)s AND "shopId" IS NULL'


@dataclass
class SessionLinks:
    """What one linking pass did: the shops it looked at, what it linked, and what it could not."""

    shops_without_session: list[str] = field(default_factory=list)
    linked: list[dict[str, str]] = field(default_factory=list)
    revoked: list[dict[str, Any]] = field(default_factory=list)
    ambiguous: list[dict[str, Any]] = field(default_factory=list)
    unanswered: list[dict[str, Any]] = field(default_factory=list)
    no_match: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The report's ``sessionLinks`` section (no token, ever)."""
        return {
            "shopsWithoutSession": self.shops_without_session,
            "linked": self.linked,
            "revoked": self.revoked,
            "ambiguous": self.ambiguous,
            "unanswered": self.unanswered,
            "noMatch": self.no_match,
        }

    def text(self) -> str:
        """One line for the run's log and the report, naming the shops."""

        def names(items: list[dict[str, Any]]) -> str:
            return ", ".join(", ".join(item["shops"]) or item["sessionShop"] for item in items) or "none"

        linked = ", ".join(f"{item['shop']} via {item['matchedBy']}" for item in self.linked) or "none"
        return (
            f"Session links: {len(self.shops_without_session)} shop(s) without a usable session; "
            f"linked {len(self.linked)}: {linked}; revoked tokens {len(self.revoked)}: {names(self.revoked)}; "
            f"ambiguous {len(self.ambiguous)}: {names(self.ambiguous)}; "
            f"unanswered {len(self.unanswered)}: {names(self.unanswered)}; "
            f"no match {len(self.no_match)}: {', '.join(self.no_match) or 'none'}"
        )


def link_sessions(
    conn: Any,
    ask: AskShop,
    *,
    shop_ids: Sequence[str] | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> SessionLinks:
    """Link each unlinked session that claims exactly one credential to that shop, when the shop needs it."""
    result = SessionLinks()
    with conn.cursor() as cur:
        cur.execute(_SHOPS_WITHOUT_USABLE_SESSION, {"shop_ids": list(shop_ids) if shop_ids else None})
        needing = [ShopRef(row[0], display_domain(row[1])) for row in cur.fetchall()]
        if not needing:
            return result
        cur.execute(_CREDENTIAL_DOMAINS)
        credentials = [ShopRef(row[0], display_domain(row[1])) for row in cur.fetchall()]
        cur.execute(_UNLINKED_SESSIONS)
        sessions = cur.fetchall()
    result.shops_without_session = [named(shop) for shop in needing]
    by_domain: dict[str, list[ShopRef]] = {}
    for credential in credentials:
        by_domain.setdefault(credential.shop_domain, []).append(credential)
    needed = {shop.shop_id: shop for shop in needing}

    def answer(session: tuple[str, str, str, bool]) -> TokenAnswer:
        _, api_domain, token, expired = session
        if expired:
            return TokenAnswer()  # not asked: it claims a credential by its session's shop only
        try:
            return ask(api_domain, token)
        except Exception as exc:  # one session that cannot be asked must not stop the others
            return TokenAnswer(failure="unanswered", detail=type(exc).__name__)

    answers = list(pool.map(answer, sessions)) if pool else [answer(s) for s in sessions]
    links: list[tuple[str, ShopRef, str]] = []
    involved: set[str] = set()
    for (session_id, session_shop, _, _), reply in zip(sessions, answers):
        claims: dict[str, tuple[ShopRef, str]] = {}
        for credential in by_domain.get(display_domain(session_shop), []):
            claims.setdefault(credential.shop_id, (credential, "session shop"))
        if reply.failure is None:
            for domain, how in ((reply.myshopify_domain, "myshopifyDomain"), (reply.primary_host, "primaryDomain")):
                for credential in by_domain.get(display_domain(domain or ""), []):
                    claims.setdefault(credential.shop_id, (credential, how))
        if not any(shop_id in needed for shop_id in claims):
            continue  # a session of a shop that is linked already, or of no shop we know: not our business
        involved.update(claims)
        shops = sorted(named(credential) for credential, _ in claims.values())
        if reply.failure is not None:
            entry = {"sessionId": session_id, "sessionShop": session_shop, "shops": shops}
            if reply.failure == "unanswered":
                entry["detail"] = reply.detail
            (result.revoked if reply.failure == "revoked" else result.unanswered).append(entry)
        elif len(claims) > 1:
            result.ambiguous.append({"sessionId": session_id, "sessionShop": session_shop, "shops": shops})
        else:
            ((credential, how),) = claims.values()
            links.append((session_id, credential, how))
    with conn.cursor() as cur:
        for session_id, credential, how in links:
            cur.execute(_LINK, {"shop_id": credential.shop_id, "session_id": session_id})
            if cur.rowcount == 1:  # 0: someone linked it meanwhile; it is left as it is
                result.linked.append({"shop": named(credential), "sessionId": session_id, "matchedBy": how})
    conn.commit()
    linked_shops = {credential.shop_id for _, credential, _ in links}
    result.no_match = [named(shop) for shop in needing if shop.shop_id not in linked_shops | involved]
    return result


def named(shop: ShopRef) -> str:
    """A shop as the report names it: id and domain."""
    return f"{shop.shop_id} ({shop.shop_domain})"
