from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from mlopen.core.access import PUBLIC, access
from mlopen.core.health import report


@access(PUBLIC)
@never_cache
@require_GET
def healthz(request):
    """No login: load balancers and `mlopen serve` itself poll this."""
    body, healthy = report()
    return JsonResponse(body, status=200 if healthy else 503)
