from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from mlopen.core.access import LOGGED_IN, PUBLIC, access
from mlopen.runs.health import healthz

# Of django.contrib.auth's pages only these: users are made by admins (`mlopen user create`, the
# admin site) and no mail is configured, so there is no password reset by e-mail.
accounts = [
    path("login/", access(PUBLIC)(auth_views.LoginView.as_view()), name="login"),
    path("logout/", access(LOGGED_IN)(auth_views.LogoutView.as_view()), name="logout"),
    path("password_change/", access(LOGGED_IN)(auth_views.PasswordChangeView.as_view()), name="password_change"),
    path(
        "password_change/done/",
        access(LOGGED_IN)(auth_views.PasswordChangeDoneView.as_view()),
        name="password_change_done",
    ),
]

# A lost database or a full disk met before a view runs (the session, in middleware) is answered
# as the middleware answers it from a view: 503 or 507, not Django's HTML 500.
handler500 = "mlopen.core.outages.server_error"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include(accounts)),
    path("api/v1/", include("mlopen.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("", include("mlopen.web.urls")),
]
