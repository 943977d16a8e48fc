// Roster's only script: progressive enhancement, the pages work without it.
// A file input marked data-fill-target="ID" copies the chosen file's text into the textarea ID,
// so IdP metadata can be uploaded as a file or pasted.
document.addEventListener('change', function (ev) {
  var input = ev.target;
  if (!input || !input.dataset || !input.dataset.fillTarget || !input.files || !input.files[0]) return;
  var target = document.getElementById(input.dataset.fillTarget);
  if (!target) return;
  var reader = new FileReader();
  reader.onload = function () { target.value = String(reader.result || ''); };
  reader.readAsText(input.files[0]);
});
