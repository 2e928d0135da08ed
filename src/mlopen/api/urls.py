from django.urls import include, path
from rest_framework.routers import DefaultRouter

from mlopen.api import views

router = DefaultRouter()
router.register("pipelines", views.PipelineViewSet, basename="pipeline")
router.register("datasets", views.DatasetViewSet, basename="dataset")
router.register("runs", views.RunViewSet, basename="run")

urlpatterns = [path("", include(router.urls))]
