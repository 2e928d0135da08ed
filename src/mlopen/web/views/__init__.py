"""The server-rendered pages. Each module is thin: it reads the request, calls a domain service
(mlopen.pipelines / datasets / runs) and renders a template from templates/web/."""
