-- "StatisticsExport"."contentHash": the sha256 of the CSV and JSON bytes last written, so a rerun whose
-- files would be identical writes nothing. In the Prisma model (StatisticsExport):
--     contentHash String?
-- Nullable and without a default, so adding it is a catalog-only change: no table rewrite, no scan.
-- ALTER TABLE still needs an ACCESS EXCLUSIVE lock for that instant (even when the column exists, as the
-- lock comes before the check); while it waits for a long transaction every later query on the table
-- queues behind it. lock_timeout bounds that wait: the statement fails after 5 s instead, and a rerun
-- (the file is idempotent) completes once the table is quiet. It lasts for this file's session only.

SET lock_timeout = '5s';
ALTER TABLE "StatisticsExport" ADD COLUMN IF NOT EXISTS "contentHash" TEXT;
