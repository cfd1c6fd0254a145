"""The HTTP endpoints, one router per area: service, identify (and search), collection."""
