from django.urls import path

from bench import views
from project.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("bench/fanout/", views.fanout, name="bench-fanout"),
    path("bench/notify/", views.notify, name="bench-notify"),
    path("bench/noop/", views.noop, name="bench-noop"),
    path("bench/broadcast/", views.broadcast, name="bench-broadcast"),
    *project_urlpatterns,
]
