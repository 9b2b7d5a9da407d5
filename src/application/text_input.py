"""Text people type into names, labels and descriptions, checked the same way everywhere."""

from application.errors import InvalidInput
from domain.text_rules import has_control_characters


def validated_text(value: str, field: str, what: str, max_length: int, *, required: bool = True) -> str:
    """Names and descriptions people give: trimmed, bounded, and free of control characters."""
    value = value.strip()
    if has_control_characters(value):
        raise InvalidInput(f"{what} may not contain control characters.", field=field)
    if not (1 if required else 0) <= len(value) <= max_length:
        raise InvalidInput(f"{what} must be {1 if required else 0} to {max_length} characters.", field=field)
    return value
