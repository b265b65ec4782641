"""The ray.io API: typed models, validation and CRD generation."""
