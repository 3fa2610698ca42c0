"""A shop's folders in the bucket, as the redaction erases them: every key the export writes of the shop is under
one of them, and no other shop's key is."""

from datetime import date

import pytest

from include.statistics_export.errors import BadInputError
from include.statistics_export.keys import (
    export_key,
    image_key,
    is_staged_for_shop,
    parquet_part_key,
    shop_export_prefix,
    shop_images_prefix,
    shop_parquet_prefix,
    staged_batch_key,
)

DAY = date(2026, 11, 21)


def test_every_key_of_a_shop_is_under_its_folders_and_no_neighbours_is():
    for shop, other in (("shop_a", "shop_ab"), ("shop_ab", "shop_a")):
        folders = (shop_export_prefix(shop), shop_images_prefix(shop), shop_parquet_prefix(shop))
        own = [
            export_key(shop, "1", "11", DAY, "csv"),
            image_key(shop, "1", "gid://shopify/MediaImage/5", "https://cdn.shopify.com/a.jpg"),
            parquet_part_key(shop, DAY, 1, 2),
        ]
        neighbours = [
            export_key(other, "1", "11", DAY, "csv"),
            image_key(other, "1", "gid://shopify/MediaImage/5", "https://cdn.shopify.com/a.jpg"),
            parquet_part_key(other, DAY, 1, 2),
        ]
        assert all(key.startswith(folder) for key, folder in zip(own, folders))
        assert not [key for key in neighbours if key.startswith(folders)]
        staged = staged_batch_key(shop, DAY, "manual__2026-11-22T00:00:00+00:00", 3)
        assert is_staged_for_shop(staged, shop) and not is_staged_for_shop(staged, other)
        assert not is_staged_for_shop(export_key(shop, "1", "11", DAY, "csv"), shop)


def test_an_id_that_could_climb_out_of_its_folder_is_refused():
    for make in (shop_export_prefix, shop_images_prefix, shop_parquet_prefix):
        with pytest.raises(BadInputError):
            make("../shop_a")
