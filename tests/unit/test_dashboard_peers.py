"""--peer-dashboard's URLs (master/peers.py): checked, made to end in /, and their origins."""

import pytest

from sieci.master.peers import dashboard_urls, origin_of
from sieci.options import master_options


def test_urls_are_taken_comma_separated_each_ending_in_a_slash():
    assert dashboard_urls(" http://127.0.0.1:9101, https://[::1]:9/sub ,") == [
        "http://127.0.0.1:9101/", "https://[::1]:9/sub/"]
    assert dashboard_urls("") == []


@pytest.mark.parametrize("url", ["ftp://host/", "http://user:pw@host/", "http://host:99999/", "http://host/?a=1",
                                 "http://host/#top", "host:80", "http:///", "http://ho st/", "javascript:alert(1)"])
def test_anything_but_a_plain_http_url_is_refused(url):
    with pytest.raises(ValueError, match="not a dashboard's URL"):
        dashboard_urls(url)


def test_origins_are_as_a_browser_sends_them():
    assert origin_of("http://127.0.0.1:9101/") == "http://127.0.0.1:9101"
    assert origin_of("http://example.org:80/x/") == "http://example.org"
    assert origin_of("https://[::1]:8443/") == "https://[::1]:8443"


def test_the_master_takes_the_option():
    [option] = [option for option in master_options() if option.flag == "--peer-dashboard"]
    assert option.env == "SIECI_PEER_DASHBOARD" and option.kind("http://a:1") == ["http://a:1/"]
