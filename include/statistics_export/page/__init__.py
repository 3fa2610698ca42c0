"""What the Statistics page reads: the days' run reports, the statistics queries, the ZIP stream of a shop's day."""
