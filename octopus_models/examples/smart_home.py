"""A small smart-home API, written as plain Python functions with type hints and docstrings.

`octogram call "Turn off the kitchen lights" --apis octopus_models/examples/smart_home.py`
reads the functions' signatures and docstrings; the bodies are placeholders.
"""

from typing import Literal


def set_light(room: str, on: bool, brightness: int = 100) -> None:
    """Switch the lights of a room on or off.

    Args:
        room: Room name, e.g. "kitchen" or "bedroom".
        on: True to switch the lights on, False to switch them off.
        brightness: Brightness in percent, from 1 to 100.
    """
    raise NotImplementedError


def set_thermostat(temperature: float, mode: Literal["heat", "cool", "auto"] = "auto") -> None:
    """Set the target temperature of the thermostat.

    Args:
        temperature: Target temperature in degrees Celsius.
        mode: Heating or cooling mode.
    """
    raise NotImplementedError


def lock_door(door: Literal["front", "back", "garage"], locked: bool = True) -> None:
    """Lock or unlock a door.

    Args:
        door: Which door.
        locked: True to lock, False to unlock.
    """
    raise NotImplementedError


def start_vacuum(rooms: list[str]) -> None:
    """Start the robot vacuum cleaner in the given rooms.

    Args:
        rooms: Names of the rooms to clean, in order.
    """
    raise NotImplementedError


def get_camera_snapshot(camera: str) -> str:
    """Get the latest snapshot of a security camera, as an image URL.

    Args:
        camera: Camera name, e.g. "porch" or "garden".
    """
    raise NotImplementedError
