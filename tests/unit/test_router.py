"""router.match: every route, the methods each takes, path normalisation and version parsing."""

from __future__ import annotations

import pytest

from fastserve.errors import BadRequest, MethodNotAllowed, NotFound
from fastserve.router import MAX_VERSION, Route, match, split_path

GET_ROUTES = [
    (b"/v2", Route("server_metadata")),
    (b"/v2/health/live", Route("live")),
    (b"/v2/health/ready", Route("ready")),
    (b"/metrics", Route("metrics")),
    (b"/v1/config", Route("config")),
    (b"/v2/models/m", Route("model_metadata", "m")),
    (b"/v2/models/m/ready", Route("model_ready", "m")),
    (b"/v2/models/m/versions/3", Route("model_metadata", "m", 3)),
    (b"/v2/models/m/versions/3/ready", Route("model_ready", "m", 3)),
    (b"/v2/models/m/config", Route("model_config", "m")),
    (b"/v2/models/m/versions/2/config", Route("model_config", "m", 2)),
    (b"/v2/models/stats", Route("model_stats")),  # every model (so a model named "stats" has no metadata URL)
    (b"/v2/models/m/stats", Route("model_stats", "m")),
    (b"/v2/models/m/versions/2/stats", Route("model_stats", "m", 2)),
]
POST_ROUTES = [
    (b"/v1/config/reload", Route("config_reload")),
    (b"/v2/models/m/infer", Route("infer", "m")),
    (b"/v2/models/m/versions/7/infer", Route("infer", "m", 7)),
]


@pytest.mark.parametrize(("url", "route"), GET_ROUTES)
def test_get_routes_take_get_and_head(url: bytes, route: Route) -> None:
    assert match(b"GET", url) == route
    assert match(b"HEAD", url) == route
    with pytest.raises(MethodNotAllowed) as caught:
        match(b"POST", url)
    assert caught.value.status == 405 and caught.value.headers == ((b"allow", b"GET, HEAD, OPTIONS"),)
    assert match(b"OPTIONS", url) == Route("options", allow=b"GET, HEAD, OPTIONS")


@pytest.mark.parametrize(("url", "route"), POST_ROUTES)
def test_post_routes_take_post_only(url: bytes, route: Route) -> None:
    assert match(b"POST", url) == route
    for method in (b"GET", b"HEAD", b"PUT", b"DELETE", b"PATCH"):
        with pytest.raises(MethodNotAllowed) as caught:
            match(method, url)
        assert caught.value.headers == ((b"allow", b"POST, OPTIONS"),)
    assert match(b"OPTIONS", url) == Route("options", allow=b"POST, OPTIONS")


def test_options_asterisk_lists_every_method() -> None:
    assert match(b"OPTIONS", b"*") == Route("options", allow=b"GET, HEAD, POST, OPTIONS")
    with pytest.raises(BadRequest):
        match(b"GET", b"*")


@pytest.mark.parametrize(
    "url",
    [b"/", b"/v3", b"/v2/health", b"/v2/models", b"/v2/models/m/infer/x", b"/v2/models/m/versions",
     b"/v2/models/m/versions/1/bogus", b"/v2/models/m/versions/abc/bogus", b"/v2/repository/index"],
)
def test_unknown_paths_are_404(url: bytes) -> None:
    with pytest.raises(NotFound) as caught:
        match(b"GET", url)
    assert caught.value.status == 404 and caught.value.message == "Invalid request URL"
    with pytest.raises(NotFound):
        match(b"OPTIONS", url)


def test_slashes_collapse_and_query_is_ignored() -> None:
    assert match(b"GET", b"//v2///health//live/") == Route("live")
    assert match(b"POST", b"/v2/models/m/infer?binary=1&x=%zz#frag") == Route("infer", "m")
    assert match(b"GET", b"/v2/health/ready?") == Route("ready")


def test_absolute_form_target() -> None:
    assert match(b"GET", b"http://127.0.0.1:8000/v2/health/live") == Route("live")
    assert match(b"GET", b"HTTPS://host/v2/models/m?q") == Route("model_metadata", "m")
    for url in (b"http://example.com", b"ftp://host/v2/health/live"):
        with pytest.raises(NotFound):
            match(b"GET", url)


@pytest.mark.parametrize(
    "url", [b"/v2/../v2/health/live", b"/v2/./health/live", b"/v2/models/%2e%2e/infer", b"/v2/models/m/%2E/ready"]
)
def test_dot_segments_are_400(url: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        match(b"GET", url)
    assert caught.value.status == 400


def test_percent_encoded_model_names_are_decoded() -> None:
    assert match(b"POST", b"/v2/models/my%20model/infer").model == "my model"
    assert match(b"GET", b"/v2/models/a%2Fb/ready").model == "a/b"  # %2F stays inside the name
    assert match(b"GET", b"/v2/models/%C3%A9t%C3%A9").model == "\u00e9t\u00e9"
    assert match(b"GET", b"/v2/models/%76%32model") == Route("model_metadata", "v2model")
    with pytest.raises(BadRequest):
        match(b"GET", b"/v2/models/%ff")  # not UTF-8
    with pytest.raises(BadRequest):
        match(b"GET", "/v2/models/\u00e9".encode())  # raw non-ASCII byte in the target


@pytest.mark.parametrize("text", ["abc", "1.5", "-1", "+1", "0x10", "%D9%A3", "1e3", "%201", "1%00"])
def test_non_numeric_version_is_400(text: str) -> None:
    with pytest.raises(BadRequest) as caught:  # %D9%A3 is an Arabic-Indic digit: isdigit() but not a version
        match(b"GET", f"/v2/models/m/versions/{text}/ready".encode())
    assert "is not a number" in caught.value.message


@pytest.mark.parametrize(
    ("text", "version"),
    [("0", 0), ("1", 1), ("007", 7), (str(MAX_VERSION), MAX_VERSION), (str(MAX_VERSION + 1), -1),
     ("9" * 19, -1), ("9" * 5000, -1), ("0" * 30 + "5", 5)],
)
def test_version_values(text: str, version: int) -> None:
    # 0 is looked up as version 0 (never served: 404); beyond int64 is -1 (never served: 404).
    assert match(b"POST", f"/v2/models/m/versions/{text}/infer".encode()).version == version


def test_split_path() -> None:
    assert split_path(b"") == ()
    assert split_path(b"/") == ()
    assert split_path(b"/a//b/?c=/d") == ("a", "b")
