"""``{% wsgateway_script %}``: the client's script tag and the endpoint it is told (no browser needed)."""

from __future__ import annotations

from django.template import Context, Template
from django.test import RequestFactory

from wsgateway.templatetags.wsgateway import endpoint_url


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
