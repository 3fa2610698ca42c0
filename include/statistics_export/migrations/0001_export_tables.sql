-- The export's three output tables, for an app whose Prisma migrations do not create them yet. On the
-- app's database they normally exist already: CREATE TABLE IF NOT EXISTS then only notices them.
-- The column lists are those of dev/local_stack/app_fixture_schema.sql (the app's schema); keep the two
-- identical (tests/integration/test_migrations.py compares what each creates).
-- The unique natural-key indexes are what the export's upserts name in ON CONFLICT. Each statement runs
-- on its own, outside a transaction block: CREATE INDEX CONCURRENTLY cannot run inside one, and it
-- builds without blocking the app's writes. Run with psql -f, or python -m include.statistics_export.migrate.

CREATE TABLE IF NOT EXISTS "StatisticsExport" (
    id                 TEXT PRIMARY KEY,
    shop               TEXT NOT NULL,
    "productId"        TEXT NOT NULL,
    "variantId"        TEXT NOT NULL,
    date               DATE NOT NULL,
    "csvR2Key"         TEXT NOT NULL,
    "jsonR2Key"        TEXT NOT NULL,
    "csvUrl"           TEXT NOT NULL,
    "jsonUrl"          TEXT NOT NULL,
    "metricsSnapshot"  JSONB NOT NULL,
    "imagesSnapshot"   JSONB NOT NULL,
    "exportedAt"       TIMESTAMP(3) NOT NULL
);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "StatisticsExport_shop_productId_variantId_date_key"
    ON "StatisticsExport" (shop, "productId", "variantId", date);

CREATE TABLE IF NOT EXISTS "VariantDailyStatistics" (
    id                TEXT PRIMARY KEY,
    shop              TEXT NOT NULL,
    "productId"       TEXT NOT NULL,
    "variantId"       TEXT NOT NULL,
    date              DATE NOT NULL,
    impressions       INTEGER NOT NULL DEFAULT 0,
    "addToCarts"      INTEGER NOT NULL DEFAULT 0,
    orders            INTEGER NOT NULL DEFAULT 0,
    revenue           DECIMAL(12, 2) NOT NULL DEFAULT 0,
    ctr               DOUBLE PRECISION NOT NULL DEFAULT 0,
    "conversionRate"  DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "VariantDailyStatistics_shop_productId_variantId_date_key"
    ON "VariantDailyStatistics" (shop, "productId", "variantId", date);

CREATE TABLE IF NOT EXISTS "ProductImageBackup" (
    id            TEXT PRIMARY KEY,
    shop          TEXT NOT NULL,
    "productId"   TEXT NOT NULL,
    "variantId"   TEXT,
    "mediaId"     TEXT NOT NULL,
    "shopifyUrl"  TEXT NOT NULL,
    "r2Url"       TEXT,
    "r2Key"       TEXT,
    "backedUpAt"  TIMESTAMP(3)
);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "ProductImageBackup_shop_mediaId_key"
    ON "ProductImageBackup" (shop, "mediaId");
