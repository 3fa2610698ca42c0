-- "StatisticsExportShopSizes": every shop's last measured size as each exported day left it
-- (include/statistics_export/shop_sizes.py), read by the next day's fleet plan. A table of the export's own,
-- created empty: nothing of the app's tables changes. One row per exported day, written by its report task.
-- In the Prisma model:
--     model StatisticsExportShopSizes { date DateTime @id @db.Date  sizes Json  runId String  writtenAt DateTime @db.Timestamp(3) }

CREATE TABLE IF NOT EXISTS "StatisticsExportShopSizes" (
    date         DATE PRIMARY KEY,
    sizes        JSONB NOT NULL,
    "runId"      TEXT NOT NULL,
    "writtenAt"  TIMESTAMP(3) NOT NULL
);
