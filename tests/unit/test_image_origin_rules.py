"""The rules for where images may come from, without the network: origins, addresses, the setting."""

import re

import pytest

from export_hooks.image_origins import address_refusal, url_refusal
from include.statistics_export import settings
from local_stack.services import Endpoints, image_hosts_env

ENV = settings.IMAGE_HOSTS.env


@pytest.mark.parametrize(
    ("raw", "origins"),
    [
        ("", ("https://cdn.shopify.com",)),
        ("https://cdn.shopify.com", ("https://cdn.shopify.com",)),
        (
            " HTTPS://CDN.Shopify.com:443/ , http://127.0.0.1:8300,",
            ("https://cdn.shopify.com", "http://127.0.0.1:8300"),
        ),
        ("http://127.0.0.1:80,http://127.0.0.1", ("http://127.0.0.1",)),
        ("https://cdn.shopify.com:8443", ("https://cdn.shopify.com:8443",)),
        ("http://[0:0::1]:8300", ("http://[::1]:8300",)),
    ],
)
def test_the_setting_is_a_list_of_canonical_origins(raw, origins):
    assert settings.load({ENV: raw}).image_hosts == origins


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("cdn.shopify.com", "lacks its scheme"),
        ("ftp://cdn.shopify.com", "the scheme must be http or https"),
        ("https://cdn.shopify.com/s/files", "is more than scheme://host[:port]"),
        ("https://user@cdn.shopify.com", "is more than scheme://host[:port]"),
        ("https://cdn.shopify.com?x=1", "is more than scheme://host[:port]"),
        ("https://*.shopify.com", "is not a host name or an IP address"),
        ("https://cdn.shopify.com:0", "port 0 is out of range"),
        ("https://cdn.shopify.com:99999", "out of range"),
        (" , ", "no origin"),
    ],
)
def test_a_bad_origin_is_an_error_naming_the_variable(raw, reason):
    with pytest.raises(
        ValueError, match=rf"^{ENV} must be a comma-separated list of origins .*got {re.escape(repr(raw.strip()))}"
    ) as bad:
        settings.load({ENV: raw})
    assert reason in str(bad.value)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.0.0.1", "a private address"),
        ("172.16.5.4", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd00::1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1%eth0", "a link-local address"),
        ("224.0.0.251", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("::ffff:10.0.0.1", "a private address"),  # IPv4-mapped: judged as the IPv4 address it carries
        ("::ffff:127.0.0.1", "a loopback address"),
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT: neither private nor global
        ("151.101.1.1", None),
        ("2a04:4e42::1", None),
        ("::ffff:151.101.1.1", None),
    ],
)
def test_only_public_addresses_may_serve_images(address, reason):
    assert address_refusal(address) == reason


ALLOWED = frozenset(settings.IMAGE_HOSTS.parse("https://cdn.shopify.com,http://127.0.0.1:8300,http://[::1]:8300"))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8300/cdn/shop/1/a.jpg", None),  # an allowed address: trusted as is, never looked up
        ("http://[::1]:8300/cdn/shop/1/a.jpg", None),
        ("http://127.0.0.1:8301/a.jpg", "http://127.0.0.1:8301 is not an allowed image origin"),
        ("https://127.0.0.1:8300/a.jpg", "https://127.0.0.1:8300 is not an allowed image origin"),
        ("http://cdn.shopify.com/a.jpg", "http://cdn.shopify.com is not an allowed image origin"),
        ("https://cdn.shopify.com:8443/a.jpg", "https://cdn.shopify.com:8443 is not an allowed image origin"),
        ("https://cdn.shopify.com.evil.test/a.jpg", "https://cdn.shopify.com.evil.test is not an allowed image origin"),
        ("https://user:pw@cdn.shopify.com/a.jpg", "the URL carries credentials"),
        ("ftp://cdn.shopify.com/a.jpg", "ftp scheme, only http and https are fetched"),
        ("//cdn.shopify.com/a.jpg", "no scheme, only http and https are fetched"),
        ("http://169.254.169.254/latest/meta-data/", "http://169.254.169.254 is not an allowed image origin"),
    ],
)
def test_a_url_must_be_http_of_an_allowed_origin(url, reason):
    found = url_refusal(url, ALLOWED, ENV)  # none of these is looked up: no network
    if reason is None:
        assert found is None
    else:
        assert found is not None and found.startswith(reason)
        assert "origin" not in reason or found.endswith(f"({ENV})")


def test_the_local_stack_adds_the_sandboxs_origin_and_nothing_else():
    sandbox = Endpoints(
        "postgresql://x/y",
        "http://127.0.0.1:1",
        "b",
        "http://127.0.0.1:8300/{shop}/admin/api/{api_version}/graphql.json",
    )
    assert image_hosts_env(sandbox) == {ENV: "https://cdn.shopify.com,http://127.0.0.1:8300"}
    shopify = Endpoints(
        "postgresql://x/y", "http://127.0.0.1:1", "b", "https://{shop}/admin/api/{api_version}/graphql.json"
    )
    assert image_hosts_env(shopify) == {ENV: "https://cdn.shopify.com"}
    assert settings.load(image_hosts_env(sandbox)).image_hosts == ("https://cdn.shopify.com", "http://127.0.0.1:8300")
