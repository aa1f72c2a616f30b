"""Process-level concerns of a running search.

    interrupt   cooperative stop requests checked every few training steps
    allocator   glibc settings that keep freed memory in the process (fewer page faults)
"""
