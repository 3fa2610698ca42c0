-- Serves the Statistics page's fleet chart: one aggregate of "VariantDailyStatistics" per day over a range
-- of days (impressions, orders, revenue summed per date). The app's unique key starts with the shop, so
-- without this index the query reads the whole table; with it, an index-only scan of the days asked for
-- (the INCLUDE columns are what the query sums). Built CONCURRENTLY: the export's upserts go on meanwhile.
-- In the Prisma model (VariantDailyStatistics):  @@index([date])  (Prisma has no INCLUDE: mark the migration
-- it generates as applied, and keep this file as the index's definition.)
CREATE INDEX CONCURRENTLY IF NOT EXISTS "VariantDailyStatistics_date_idx"
    ON "VariantDailyStatistics" (date) INCLUDE (impressions, orders, revenue);
