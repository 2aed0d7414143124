"""CityOps: the Intelligent Operations Center for Đồng Nai's smart-city programme."""

__version__ = "0.1.0"
