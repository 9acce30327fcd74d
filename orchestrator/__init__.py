"""Cloud PBX call brain: routes FreeSWITCH calls by each tenant's routing data."""
__version__ = "0.1.0"
