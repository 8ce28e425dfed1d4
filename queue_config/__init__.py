"""queue_config"""
