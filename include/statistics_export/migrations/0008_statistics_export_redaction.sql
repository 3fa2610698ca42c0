-- "StatisticsExportRedaction": the shops whose data the export erased on Shopify's shop/redact webhook
-- (include/statistics_export/redaction.py). A table of the export's own, created empty: nothing of the app's tables
-- changes. One row per shop, written first by its redaction (the fence: the export skips a shop that has a row here)
-- and finished with what was erased: counts by kind, never a domain.
-- In the Prisma model:
--     model StatisticsExportRedaction { shopId String @id  requestedAt DateTime @db.Timestamp(3)
--                                       finishedAt DateTime? @db.Timestamp(3)  runId String  counts Json }

CREATE TABLE IF NOT EXISTS "StatisticsExportRedaction" (
    "shopId"       TEXT PRIMARY KEY,
    "requestedAt"  TIMESTAMP(3) NOT NULL,
    "finishedAt"   TIMESTAMP(3),
    "runId"        TEXT NOT NULL,
    counts         JSONB NOT NULL DEFAULT '{}'::jsonb
);
