-- Trend views over "VariantDailyStatistics" for analysts: weekly and monthly per variant, daily, weekly
-- and monthly per shop. Each view sums impressions, add-to-carts, orders and revenue, and recomputes
-- ctr = addToCarts / impressions and conversionRate = orders / impressions from those sums: a ratio of
-- sums, never an average of the daily ratios (a day with 2 impressions would otherwise weigh as much as
-- one with 20,000). A period without impressions has NULL rates (the ratio is undefined), not 0.
-- Periods are UTC, as the daily rows' dates are UTC days. Weeks start on Monday (ISO weeks):
-- date_trunc('week', ...) on a timestamp without time zone, so the session's TimeZone cannot shift
-- the week (a bare date would be cast to timestamptz, in the session's zone). A week keeps all its days
-- even when it straddles two months; the monthly views cut by calendar month.
-- CREATE OR REPLACE VIEW is idempotent and takes only a short lock on the view itself: the app's
-- tables are not locked beyond the catalog lookup. Read them with SELECT; the export never does.

CREATE OR REPLACE VIEW "VariantWeeklyStatistics" AS
SELECT shop, "productId", "variantId",
       date_trunc('week', date::timestamp)::date AS "weekStart",
       sum(impressions)::bigint AS impressions,
       sum("addToCarts")::bigint AS "addToCarts",
       sum(orders)::bigint AS orders,
       sum(revenue)::numeric(14, 2) AS revenue,
       sum("addToCarts")::numeric / NULLIF(sum(impressions), 0) AS ctr,
       sum(orders)::numeric / NULLIF(sum(impressions), 0) AS "conversionRate",
       count(*)::integer AS days
FROM "VariantDailyStatistics"
GROUP BY shop, "productId", "variantId", date_trunc('week', date::timestamp)::date;

CREATE OR REPLACE VIEW "VariantMonthlyStatistics" AS
SELECT shop, "productId", "variantId",
       date_trunc('month', date::timestamp)::date AS "monthStart",
       sum(impressions)::bigint AS impressions,
       sum("addToCarts")::bigint AS "addToCarts",
       sum(orders)::bigint AS orders,
       sum(revenue)::numeric(14, 2) AS revenue,
       sum("addToCarts")::numeric / NULLIF(sum(impressions), 0) AS ctr,
       sum(orders)::numeric / NULLIF(sum(impressions), 0) AS "conversionRate",
       count(*)::integer AS days
FROM "VariantDailyStatistics"
GROUP BY shop, "productId", "variantId", date_trunc('month', date::timestamp)::date;

CREATE OR REPLACE VIEW "ShopDailyStatistics" AS
SELECT shop, date,
       sum(impressions)::bigint AS impressions,
       sum("addToCarts")::bigint AS "addToCarts",
       sum(orders)::bigint AS orders,
       sum(revenue)::numeric(14, 2) AS revenue,
       sum("addToCarts")::numeric / NULLIF(sum(impressions), 0) AS ctr,
       sum(orders)::numeric / NULLIF(sum(impressions), 0) AS "conversionRate",
       count(*)::integer AS variants
FROM "VariantDailyStatistics"
GROUP BY shop, date;

CREATE OR REPLACE VIEW "ShopWeeklyStatistics" AS
SELECT shop,
       date_trunc('week', date::timestamp)::date AS "weekStart",
       sum(impressions)::bigint AS impressions,
       sum("addToCarts")::bigint AS "addToCarts",
       sum(orders)::bigint AS orders,
       sum(revenue)::numeric(14, 2) AS revenue,
       sum("addToCarts")::numeric / NULLIF(sum(impressions), 0) AS ctr,
       sum(orders)::numeric / NULLIF(sum(impressions), 0) AS "conversionRate",
       count(DISTINCT date)::integer AS days
FROM "VariantDailyStatistics"
GROUP BY shop, date_trunc('week', date::timestamp)::date;

CREATE OR REPLACE VIEW "ShopMonthlyStatistics" AS
SELECT shop,
       date_trunc('month', date::timestamp)::date AS "monthStart",
       sum(impressions)::bigint AS impressions,
       sum("addToCarts")::bigint AS "addToCarts",
       sum(orders)::bigint AS orders,
       sum(revenue)::numeric(14, 2) AS revenue,
       sum("addToCarts")::numeric / NULLIF(sum(impressions), 0) AS ctr,
       sum(orders)::numeric / NULLIF(sum(impressions), 0) AS "conversionRate",
       count(DISTINCT date)::integer AS days
FROM "VariantDailyStatistics"
GROUP BY shop, date_trunc('month', date::timestamp)::date;
