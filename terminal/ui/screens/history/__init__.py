"""Today's list, newest first, with search by order number (a scanned receipt QR or a typed
number); the only text field in the app, and the wedge scanner stays out of it while it is focused.

Portrait: Back in a row of its own at the bottom. Landscape (800x480): Back beside the search, and
the list takes the bottom row too."""

from __future__ import annotations

from kivy.app import App
from kivy.uix.screenmanager import Screen

from terminal.ui.widgets import show_child


class HistoryScreen(Screen):
    def on_kv_post(self, base_widget: object) -> None:
        self._back, self._bottom = self.ids.back.__self__, self.ids.bottom_row.__self__  # kept while out of the tree
        App.get_running_app().bind(landscape=self._arrange)
        self._arrange()

    def _arrange(self, *args: object) -> None:
        landscape = App.get_running_app().landscape
        body = self.ids.body
        if self._back.parent is not None:
            self._back.parent.remove_widget(self._back)
        if landscape:
            show_child(body, self._bottom, False, 0)
            show_child(self.ids.search_row, self._back, True, 2)
        else:
            show_child(body, self._bottom, True, len(body.children))
            show_child(self._bottom, self._back, True, 0)
