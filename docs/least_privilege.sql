-- The least privileges of the export's PostgreSQL role in the Shopify app's database.
-- Run as the tables' owner:  psql -v export_role=statistics_export -f docs/least_privilege.sql
-- (tests/airflow/test_least_privilege.py runs this very file, then the whole DAG as that role).
-- The role needs CONNECT on the database (PUBLIC has it unless revoked) and nothing else: no DDL,
-- no DELETE, no TRUNCATE, no write on the app's own tables but "Session"."shopId" (below).

GRANT USAGE ON SCHEMA public TO :"export_role";

-- Sources, read only, column by column: the export never sees "apiKey"/"apiSecret" or the sessions'
-- state and scope.
GRANT SELECT (id, "shopDomain", "isActive") ON "ShopCredential" TO :"export_role";
GRANT SELECT (id, shop, "isOnline", expires, "accessToken", "shopId") ON "Session" TO :"export_role";
GRANT SELECT (id, shop, name, status) ON "ABTest" TO :"export_role";
GRANT SELECT ("testId", "eventType", "variantId", revenue, "createdAt") ON "ABTestEvent" TO :"export_role";

-- Linking a shop's unlinked session (sessions.py, the original's link:sessions): the one column of the
-- app's tables the export writes, and only where it is NULL. Nothing else of "Session" is writable.
GRANT UPDATE ("shopId") ON "Session" TO :"export_role";

-- Outputs, upserted with INSERT ... ON CONFLICT (natural key) DO UPDATE. That statement needs INSERT,
-- UPDATE, and SELECT on the conflict target's columns and on every column its SET reads through
-- EXCLUDED, which is nearly every column; the export also reads back image backups, content hashes
-- and (reconciliation) the day's statistics. Hence SELECT on the whole table. No DELETE.
GRANT SELECT, INSERT, UPDATE ON "StatisticsExport" TO :"export_role";
GRANT SELECT, INSERT, UPDATE ON "VariantDailyStatistics" TO :"export_role";
GRANT SELECT, INSERT, UPDATE ON "ProductImageBackup" TO :"export_role";
