-- The Shopify app's own schema, as its Prisma migrations create it (quoted camelCase names): a fixture
-- for the tests and the demo, never run in production, where the app owns these tables.
-- What the export adds to the app's database (the "contentHash" column, two "ABTestEvent" indexes, the
-- output tables when the app lacks them) is not here: it is the migrations in
-- include/statistics_export/migrations/, which local_stack.services.apply_schema runs after this file.
-- Idempotent: safe to run on every start.

CREATE TABLE IF NOT EXISTS "ShopCredential" (
    id            TEXT PRIMARY KEY,
    "shopDomain"  TEXT NOT NULL,
    "apiKey"      TEXT,
    "apiSecret"   TEXT,
    mode          TEXT NOT NULL DEFAULT 'PUBLIC' CHECK (mode IN ('PUBLIC', 'PRIVATE')),
    "isActive"    BOOLEAN NOT NULL DEFAULT true,
    "createdAt"   TIMESTAMP(3) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    "updatedAt"   TIMESTAMP(3) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE UNIQUE INDEX IF NOT EXISTS "ShopCredential_shopDomain_key" ON "ShopCredential" ("shopDomain");

CREATE TABLE IF NOT EXISTS "Session" (
    id             TEXT PRIMARY KEY,
    shop           TEXT NOT NULL,
    state          TEXT NOT NULL DEFAULT '',
    "isOnline"     BOOLEAN NOT NULL DEFAULT false,
    scope          TEXT,
    expires        TIMESTAMP(3),
    "accessToken"  TEXT NOT NULL,
    -- Expiring offline tokens (shopify-app-js session-storage-prisma 9.x): NULL on a non-expiring session.
    "refreshToken"         TEXT,
    "refreshTokenExpires"  TIMESTAMP(3),
    "shopId"       TEXT REFERENCES "ShopCredential" (id) ON DELETE SET NULL ON UPDATE CASCADE
);
CREATE INDEX IF NOT EXISTS "Session_shopId_idx" ON "Session" ("shopId");

CREATE TABLE IF NOT EXISTS "ABTest" (
    id           TEXT PRIMARY KEY,
    shop         TEXT NOT NULL,
    name         TEXT NOT NULL,
    "productId"  TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'DRAFT' CHECK (status IN ('DRAFT', 'ACTIVE', 'PAUSED', 'COMPLETED')),
    "createdAt"  TIMESTAMP(3) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    "updatedAt"  TIMESTAMP(3) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX IF NOT EXISTS "ABTest_shop_idx" ON "ABTest" (shop);

CREATE TABLE IF NOT EXISTS "ABTestEvent" (
    id           TEXT PRIMARY KEY,
    "testId"     TEXT NOT NULL REFERENCES "ABTest" (id) ON DELETE CASCADE ON UPDATE CASCADE,
    "sessionId"  TEXT NOT NULL,
    "eventType"  TEXT NOT NULL,  -- a plain Prisma String, no CHECK: the export rejects unknown types
    "productId"  TEXT NOT NULL,
    "variantId"  TEXT,
    revenue      DECIMAL(12, 2),
    "createdAt"  TIMESTAMP(3) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
CREATE INDEX IF NOT EXISTS "ABTestEvent_testId_idx" ON "ABTestEvent" ("testId");

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
CREATE UNIQUE INDEX IF NOT EXISTS "StatisticsExport_shop_productId_variantId_date_key"
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
CREATE UNIQUE INDEX IF NOT EXISTS "VariantDailyStatistics_shop_productId_variantId_date_key"
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
CREATE UNIQUE INDEX IF NOT EXISTS "ProductImageBackup_shop_mediaId_key" ON "ProductImageBackup" (shop, "mediaId");
