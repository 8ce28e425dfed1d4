// A checkbox cannot say "no override" by itself: its state is sent only once it was touched
// (or when the schema gives it a default), through the hidden "#set" input beside it.
(function () {
  "use strict";
  var boxes = document.querySelectorAll("input[type=checkbox][data-marker]");
  Array.prototype.forEach.call(boxes, function (box) {
    box.addEventListener("change", function () {
      var marker = document.getElementById(box.dataset.marker);
      if (marker) {
        marker.disabled = false;
      }
    });
  });
})();
