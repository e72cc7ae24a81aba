"""Scan with the camera: a live preview whose decoded codes go to the same scan() as the wedge
scanner, or a clear "no camera" panel pointing at the hardware scanner (which works here too)."""

from __future__ import annotations

from kivy.app import App
from kivy.properties import StringProperty
from kivy.uix.screenmanager import Screen


class ScanScreen(Screen):
    camera_status = StringProperty("no_camera")

    def on_pre_enter(self, *args: object) -> None:
        app = App.get_running_app()
        camera = app.camera
        self.camera_status = camera.info.status.value
        preview = camera.widget()
        holder = self.ids.preview
        holder.clear_widgets()
        if preview is not None:
            holder.add_widget(preview)
            camera.start(app.vm.scan)

    def on_leave(self, *args: object) -> None:
        app = App.get_running_app()
        app.camera.stop()
        self.ids.preview.clear_widgets()
