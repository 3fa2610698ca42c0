-- The least privileges of the export's PostgreSQL role, the Statistics page's and the redaction's, in the
-- Shopify app's database.
-- Run as the tables' owner:
--   psql -v ON_ERROR_STOP=1 -v export_role=statistics_export -v page_role=statistics_page \
--        -v redaction_role=statistics_redaction -f docs/least_privilege.sql
-- (each part runs when its variable is given: without -v page_role only the export role is granted, without
-- -v export_role only the page role; tests/airflow/test_least_privilege.py runs this very file, then the whole
-- DAG as the export role and the page's queries as the page role).
-- Each role needs CONNECT on the database (PUBLIC has it unless revoked) and nothing else: no DDL,
-- no DELETE (but the redaction role's, on exactly the export's three output tables), no TRUNCATE, no write on
-- the app's own tables but the export's "Session"."shopId" and, for expiring offline tokens, the session's four
-- token columns (below).

\if :{?export_role}
GRANT USAGE ON SCHEMA public TO :"export_role";

-- Sources, read only, column by column: the export never sees the sessions' state, scope or user.
GRANT SELECT (id, "shopDomain", "isActive") ON "ShopCredential" TO :"export_role";
-- Expiring offline tokens (include/statistics_export/tokens.py): refreshing a shop's token needs the app's OAuth
-- client ("apiKey"/"apiSecret" are the client_id/client_secret Shopify's token endpoint takes); "mode" tells
-- the public apps, whose non-expiring tokens Shopify rejects from 2027-01-01, from the exempt custom ones.
GRANT SELECT ("apiKey", "apiSecret", mode) ON "ShopCredential" TO :"export_role";
GRANT SELECT (id, shop, "isOnline", expires, "accessToken", "shopId") ON "Session" TO :"export_role";
GRANT SELECT (id, shop, name, status) ON "ABTest" TO :"export_role";
GRANT SELECT ("testId", "eventType", "variantId", revenue, "createdAt") ON "ABTestEvent" TO :"export_role";

-- Linking a shop's unlinked session (sessions.py, the original's link:sessions): written only where it is NULL.
GRANT UPDATE ("shopId") ON "Session" TO :"export_role";

-- Expiring offline tokens: a stale token is refreshed under the session row's lock (SELECT ... FOR UPDATE, which
-- needs UPDATE on a column) and the new pair written back, all four columns in one statement: Shopify retires
-- the old refresh token once the new one is used, so a pair refreshed and not stored would lock the app out.
-- Only where the app's "Session" has the refresh token columns (shopify-app-js session-storage-prisma 9.x):
-- an app not migrated yet keeps the grants above, and the export reads its sessions as before; run this file
-- again once it is migrated.
SELECT count(*) = 2 AS session_has_refresh_columns FROM pg_attribute WHERE attrelid = to_regclass('"Session"') AND attname IN ('refreshToken', 'refreshTokenExpires') AND NOT attisdropped \gset
\if :session_has_refresh_columns
GRANT SELECT ("refreshToken", "refreshTokenExpires") ON "Session" TO :"export_role";
GRANT UPDATE ("accessToken", expires, "refreshToken", "refreshTokenExpires") ON "Session" TO :"export_role";
\endif

-- Outputs, upserted with INSERT ... ON CONFLICT (natural key) DO UPDATE. That statement needs INSERT,
-- UPDATE, and SELECT on the conflict target's columns and on every column its SET reads through
-- EXCLUDED, which is nearly every column; the export also reads back image backups, content hashes
-- and (reconciliation) the day's statistics. Hence SELECT on the whole table. No DELETE.
GRANT SELECT, INSERT, UPDATE ON "StatisticsExport" TO :"export_role";
GRANT SELECT, INSERT, UPDATE ON "VariantDailyStatistics" TO :"export_role";
GRANT SELECT, INSERT, UPDATE ON "ProductImageBackup" TO :"export_role";
-- Which run writes a day (day_claims.py): claimed with INSERT, taken over with UPDATE, checked with
-- SELECT ... FOR SHARE / FOR UPDATE (row locks need UPDATE, which the takeover needs anyway).
GRANT SELECT, INSERT, UPDATE ON "StatisticsExportDay" TO :"export_role";
-- Every shop's last size per day (shop_sizes.py): read by the fleet plan, upserted by the report task.
GRANT SELECT, INSERT, UPDATE ON "StatisticsExportShopSizes" TO :"export_role";
-- The shops erased on Shopify's shop/redact (redaction.py): the export lists none of them and refuses to write one.
GRANT SELECT ON "StatisticsExportRedaction" TO :"export_role";
\endif

-- The redaction's role (the app_db_redaction connection of the shop_data_redaction and statistics_retention DAGs):
-- the only role that deletes,
-- and only a shop's rows of the export's three output tables (DELETE ... WHERE shop = ..., which reads the shop
-- column). It refuses an active shop, so it reads "isActive" (and the domain, to take it out of the reports' text);
-- it takes the shop's entries out of every day's sizes (UPDATE ... SET sizes = sizes - shop); it records the
-- redaction first and its counts last. Nothing else of the app's tables, no DDL. Granted when -v redaction_role is
-- given.
\if :{?redaction_role}
GRANT USAGE ON SCHEMA public TO :"redaction_role";
GRANT SELECT (id, "shopDomain", "isActive") ON "ShopCredential" TO :"redaction_role";
-- The retention period's erasure (statistics_retention, retention.py) finds a day's shops and variants by date.
GRANT SELECT (shop, "productId", "variantId", date), DELETE ON "StatisticsExport" TO :"redaction_role";
GRANT SELECT (shop, "productId", "variantId", date), DELETE ON "VariantDailyStatistics" TO :"redaction_role";
GRANT SELECT (shop), DELETE ON "ProductImageBackup" TO :"redaction_role";
GRANT SELECT (date, sizes), UPDATE (sizes) ON "StatisticsExportShopSizes" TO :"redaction_role";
GRANT SELECT, INSERT, UPDATE ON "StatisticsExportRedaction" TO :"redaction_role";
\endif

-- The Statistics page's role (the api-server's statistics_page_db connection): SELECT on exactly the columns the
-- page reads (plugins/statistics_ui, include/statistics_export/page/statistics_queries.py), nothing of "Session",
-- "ABTest" or "ABTestEvent" (never an access token), no write anywhere. Granted when -v page_role is given.
\if :{?page_role}
GRANT USAGE ON SCHEMA public TO :"page_role";
GRANT SELECT (id, "shopDomain") ON "ShopCredential" TO :"page_role";
GRANT SELECT (shop, date, "productId", "variantId", "csvR2Key", "jsonR2Key") ON "StatisticsExport" TO :"page_role";
GRANT SELECT (date, impressions, orders, revenue) ON "VariantDailyStatistics" TO :"page_role";
\endif
