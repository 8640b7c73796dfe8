"""adapters/telegram"""
