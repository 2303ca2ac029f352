"""``{% wsgateway_script %}``: the client's script tag and the endpoint it is told (no browser needed)."""

from __future__ import annotations

from django.template import Context, Template
from django.test import RequestFactory

from wsgateway.templatetags.wsgateway import csp_nonce, endpoint_url, script_tag


def render(source: str, **context: object) -> str:
    return Template("{% load wsgateway %}" + source).render(Context(context))


def test_renders_the_script_with_the_endpoint_on_the_requests_host() -> None:
    request = RequestFactory().get("/", HTTP_HOST="127.0.0.1:8000")
    assert render("{% wsgateway_script %}", request=request) == (
        '<script src="/static/wsgateway/wsgateway.js" data-wsgateway-url="ws://127.0.0.1:8000/ws/"></script>'
    )


def test_a_secure_request_gets_wss() -> None:
    request = RequestFactory().get("/", secure=True, HTTP_HOST="localhost")
    assert 'data-wsgateway-url="wss://localhost/ws/"' in render("{% wsgateway_script %}", request=request)


def test_the_path_is_an_argument() -> None:
    request = RequestFactory().get("/", HTTP_HOST="localhost")
    html = render('{% wsgateway_script "/ws/notifications/" %}', request=request)
    assert 'data-wsgateway-url="ws://localhost/ws/notifications/"' in html
    html = render('{% wsgateway_script path="rt/" %}', request=request)
    assert 'data-wsgateway-url="ws://localhost/rt/"' in html


def test_a_whole_url_is_used_as_given_and_escaped() -> None:
    html = render("{% wsgateway_script endpoint %}", endpoint='wss://push.example.com/ws/?a=1&b="2"')
    assert 'data-wsgateway-url="wss://push.example.com/ws/?a=1&amp;b=&quot;2&quot;"' in html


def test_without_a_request_the_client_resolves_the_path_against_the_page() -> None:
    assert 'data-wsgateway-url="/ws/"' in render("{% wsgateway_script %}")
    assert endpoint_url(None, "custom/") == "/custom/"


def test_no_nonce_without_one_in_the_context() -> None:
    request = RequestFactory().get("/", HTTP_HOST="localhost")
    assert "nonce" not in render("{% wsgateway_script %}", request=request)
    assert "nonce" not in render("{% wsgateway_script %}", request=request, csp_nonce="")


def test_the_csp_nonce_variable_goes_on_the_script_tag() -> None:
    """Django's ``csp`` context processor sets ``csp_nonce``, as django-htmx's tags read it."""
    request = RequestFactory().get("/", HTTP_HOST="localhost")
    assert render("{% wsgateway_script %}", request=request, csp_nonce="r4nd0m") == (
        '<script src="/static/wsgateway/wsgateway.js" data-wsgateway-url="ws://localhost/ws/"'
        ' nonce="r4nd0m"></script>'
    )


def test_django_csps_request_nonce_goes_on_the_script_tag() -> None:
    """django-csp's middleware puts a lazy ``csp_nonce`` on the request; reading it makes the nonce."""

    class LazyNonce:
        read = 0

        def __str__(self) -> str:
            LazyNonce.read += 1
            return "from-django-csp"

        def __bool__(self) -> bool:
            return True

    request = RequestFactory().get("/", HTTP_HOST="localhost")
    request.csp_nonce = LazyNonce()  # type: ignore[attr-defined]
    assert 'nonce="from-django-csp"></script>' in render("{% wsgateway_script %}", request=request)
    assert LazyNonce.read == 1
    # The context's variable, when a page has both, is the one its policy was written with.
    html = render("{% wsgateway_script %}", request=request, csp_nonce="from-context")
    assert 'nonce="from-context"' in html and "from-django-csp" not in html
    assert LazyNonce.read == 1  # and django-csp's was not made for nothing


def test_the_nonce_is_escaped_and_the_plain_functions_serve_without_a_template() -> None:
    assert 'nonce="a&quot;&gt;&lt;script&gt;"' in render("{% wsgateway_script %}", csp_nonce='a"><script>')
    assert csp_nonce(Context({})) is None
    assert csp_nonce(Context({"csp_nonce": "n"})) == "n"
    assert (
        script_tag("/s.js", "/ws/", "n")
        == '<script src="/s.js" data-wsgateway-url="/ws/" nonce="n"></script>'
    )
    assert script_tag("/s.js", "/ws/") == '<script src="/s.js" data-wsgateway-url="/ws/"></script>'
