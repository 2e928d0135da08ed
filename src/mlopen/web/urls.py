from django.urls import path

from mlopen.web.views import dashboard, datasets, live, notifications, pipeline_code, pipelines, runs, storage, webhooks

app_name = "web"
urlpatterns = [
    path("", dashboard.home, name="home"),
    path("live/home/", dashboard.home_live, name="home-live"),
    path("pipelines/", pipelines.pipeline_list, name="pipeline-list"),
    path("pipelines/upload/", pipelines.pipeline_upload, name="pipeline-upload"),
    path("pipelines/<int:pk>/", pipelines.pipeline_detail, name="pipeline-detail"),
    path("pipelines/<int:pk>/runs/live/", live.pipeline_runs_live, name="pipeline-runs-live"),
    path("pipelines/<int:pk>/visibility/", pipelines.pipeline_visibility, name="pipeline-visibility"),
    path("pipelines/<int:pk>/first-run/", pipelines.pipeline_first_run, name="pipeline-first-run"),
    path("pipelines/<int:pk>/versions/<int:number>/files/", pipeline_code.version_files, name="pipeline-files"),
    path(
        "pipelines/<int:pk>/versions/<int:number>/files/<path:path>",
        pipeline_code.version_files,
        name="pipeline-file",
    ),
    path(
        "pipelines/<int:pk>/versions/<int:number>/download/<path:path>",
        pipeline_code.version_file_download,
        name="pipeline-file-download",
    ),
    path("pipelines/<int:pk>/compare/", pipeline_code.version_compare, name="pipeline-compare"),
    path("datasets/", datasets.dataset_list, name="dataset-list"),
    path("datasets/upload/", datasets.dataset_upload, name="dataset-upload"),
    path("datasets/<int:pk>/", datasets.dataset_detail, name="dataset-detail"),
    path("datasets/<int:pk>/delete/", datasets.dataset_delete, name="dataset-delete"),
    path("datasets/<int:pk>/share/", datasets.dataset_share, name="dataset-share"),
    path("runs/", runs.run_list, name="run-list"),
    path("runs/live/", live.run_list_live, name="run-list-live"),
    path("runs/new/", runs.run_new, name="run-new"),
    path("runs/new/params/", runs.run_new_params, name="run-new-params"),
    path("runs/<int:pk>/", runs.run_detail, name="run-detail"),
    path("runs/<int:pk>/status/", runs.run_status, name="run-status"),
    path("runs/<int:pk>/table/", runs.run_table, name="run-table"),
    path("runs/<int:pk>/cancel/", runs.run_cancel, name="run-cancel"),
    path("runs/<int:pk>/rerun/", runs.run_rerun, name="run-rerun"),
    path("runs/<int:pk>/share/", runs.run_share, name="run-share"),
    path("runs/<int:pk>/graphs/<int:index>/", runs.graph_frame, name="run-graph"),
    path("account/webhooks/", webhooks.webhook_list, name="webhook-list"),
    path("storage/", storage.storage_page, name="storage"),
    path("account/notifications/", notifications.notification_preferences, name="notification-preferences"),
]
