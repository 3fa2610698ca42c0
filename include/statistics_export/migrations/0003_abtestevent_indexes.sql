-- Two indexes on the app's events, built CONCURRENTLY: the app keeps inserting events during the
-- build (a plain CREATE INDEX would hold a SHARE lock and block every insert until it finished).
-- A concurrent build waits for the transactions older than it before it completes; it blocks nobody.
-- If a build is interrupted, it leaves an INVALID index under its name, which IF NOT EXISTS would keep:
-- python -m include.statistics_export.migrate drops such a leftover (concurrently) before building.
-- Run each statement outside a transaction block, as psql -f does.

-- Serves the per-batch metrics query: the batch's variant ids (both spellings) x one day.
-- In the Prisma model (ABTestEvent):  @@index([variantId, createdAt])
CREATE INDEX CONCURRENTLY IF NOT EXISTS "ABTestEvent_variantId_createdAt_idx"
    ON "ABTestEvent" ("variantId", "createdAt");

-- Serves the whole-shop day queries (rejected events, reconciliation): the shop's tests x one day.
-- In the Prisma model (ABTestEvent):  @@index([testId, createdAt])
CREATE INDEX CONCURRENTLY IF NOT EXISTS "ABTestEvent_testId_createdAt_idx"
    ON "ABTestEvent" ("testId", "createdAt");
