-- "StatisticsExportDay": which run writes a day (include/statistics_export/day_claims.py). A table of the
-- export's own, created empty: nothing of the app's tables changes. One row per exported day.
-- In the Prisma model:
--     model StatisticsExportDay { date DateTime @id @db.Date  runId String  claimedAt DateTime @db.Timestamp(3) }

CREATE TABLE IF NOT EXISTS "StatisticsExportDay" (
    date         DATE PRIMARY KEY,
    "runId"      TEXT NOT NULL,
    "claimedAt"  TIMESTAMP(3) NOT NULL
);
