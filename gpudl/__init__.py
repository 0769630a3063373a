"""gpudl"""
